"""Tests of the official alert feeds at central."""
