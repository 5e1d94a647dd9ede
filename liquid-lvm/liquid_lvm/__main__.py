from liquid_lvm.cli import main

main()
