"""Unit tests of pure logic (planning, selectors, settings, queue, lease state machine): no cluster."""
