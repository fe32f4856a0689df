"""The runtime's commands, one module per stage of use; aetool.cli loads each when it runs."""
