"""``python -m liquid_lvm.encoder``."""

from liquid_lvm.encoder.cli import app

app(prog_name="python -m liquid_lvm.encoder")
