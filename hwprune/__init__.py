"""hwprune."""
