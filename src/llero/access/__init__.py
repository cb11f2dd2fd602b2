"""Access control: the permission registry every route names."""
