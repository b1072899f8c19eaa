"""The WebSocket endpoint in three layers: transport (socket, read loop, writer task),
connection (auth phase, dispatch, subscriptions, error mapping), commands (one module per
family)."""
