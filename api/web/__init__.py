"""The organizers' web pages: server-rendered with Jinja2, no front-end toolchain."""
