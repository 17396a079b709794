"""Official air-raid alert feeds (alerts.in.ua, CAP 1.2): polled, stored as alert periods, never acted upon."""
