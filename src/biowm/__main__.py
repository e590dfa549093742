"""`python -m biowm …`: the same command line as the `biowm` script."""

from biowm.cli import main

if __name__ == "__main__":
    main()
