"""Block registration scripts: `python blocks/register_<kind>.py --help`."""
