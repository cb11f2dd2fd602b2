"""Users, sign-in and the tokens that prove who a caller is."""
