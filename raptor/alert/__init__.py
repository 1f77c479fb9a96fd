"""``raptor alert``: one central alerter for the fleet, a consumer group on the fleet's
history stream (issue 15; being built: :mod:`.config` reads and checks its file)."""
