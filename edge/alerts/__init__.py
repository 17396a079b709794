"""Siren monitoring at the edge (monitoring only: Varta never triggers a siren); see :mod:`edge.alerts.monitor`."""
