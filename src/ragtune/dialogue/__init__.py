"""Knowledge-grounded dialogue data: conversations whose responses name the knowledge-base triples they use."""
