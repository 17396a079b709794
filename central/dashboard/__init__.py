"""The dispatcher dashboard: server-rendered Jinja2 pages, small vanilla JS, Ukrainian by default."""
