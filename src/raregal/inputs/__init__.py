"""Inputs: survey tables, image shards, cutouts from the sky services, Galaxy Zoo trees."""
