"""`python -m assay_client`: the same as the `assay` command."""

from assay_client.cli.main import main

main()
