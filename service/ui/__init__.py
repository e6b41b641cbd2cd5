"""The web console (``/ui``): Jinja2 pages, htmx for partial updates, inline SVG charts."""
