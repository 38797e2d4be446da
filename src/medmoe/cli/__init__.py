"""The ``medmoe`` command line: one tool, one thin module per subcommand."""
