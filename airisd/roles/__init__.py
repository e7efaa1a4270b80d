"""The four roles' query and management APIs, and the routes every role serves."""
