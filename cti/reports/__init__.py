"""Reports for team leads and management: figures per team and employee, CSV/HTML, weekly mail."""
