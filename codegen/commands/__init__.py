"""One module per CLI subcommand; each imports heavy dependencies inside the command."""
