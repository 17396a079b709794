"""Users, roles, sessions, API tokens, audit log and route guards."""
