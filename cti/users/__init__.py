"""Users of the web screens: accounts, passwords, API tokens."""
