"""The `qgjob` command: thin rich-click commands that parse, call and print."""
