"""The control store. Today it lives inside the head's node manager (node/node_manager.py keeps the
node table, the actor directory and named actors in memory); a persistent backend (Redis) is future
work for head restarts."""
