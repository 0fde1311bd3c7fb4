"""The server side: the API, the queue, the LISTEN hub, the database, reporting, the dashboard, the bench.
Nothing on the client side (qualgent.cli, qualgent.agent) imports it."""
