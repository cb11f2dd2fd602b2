"""Incident response: revoke every credential at once, lock the system down, and alert admins."""
