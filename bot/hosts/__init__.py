"""Hosting services (GitHub, GitLab) and local output behind one protocol with neutral types."""
