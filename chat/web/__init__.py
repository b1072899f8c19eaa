"""The web pages and scripts the service serves itself (PROTOCOL 9): the agent console, the customer
widget, the demo page and their shared protocol client, all shipped as package data."""
