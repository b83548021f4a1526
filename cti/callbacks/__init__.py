"""The callback clock at work: closing hoppers, click-to-call, reminders and escalations."""
