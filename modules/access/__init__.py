"""Access: the one policy every adapter asks (modules.access.policy) and the request limits."""
