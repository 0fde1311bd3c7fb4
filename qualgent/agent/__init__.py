"""The agent: a worker host that claims whole groups over HTTP and runs their tests.
It never touches the database."""
