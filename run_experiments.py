"""Run the Liquid stack's experiments: ``python run_experiments.py --help``."""

from experiments.cli import main

if __name__ == "__main__":
    main()
