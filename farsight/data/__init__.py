"""Recording, storing and loading episodes."""
