"""Incidents: the rules that open and close them from the fleet's stored state, the engine that applies them,
and the queries the API, dashboard and notifications share."""
