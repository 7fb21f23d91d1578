"""What a pack's config, results and checkpoint hold, by name: shared by the pack's trial
(``trainables.pack_trial``) and the driver (``tuning.packs``), without importing torch."""

PACK_KEY = "pack"  # in a config: the members' own settings; in a result: each member's result (JSON)
PACK_STATE = "pack.json"  # in a pack's checkpoint: its epoch and the members that have ended


def member_dir(number: int) -> str:
    """The folder of member ``number``'s trial checkpoint inside its pack's checkpoint."""
    return f"member-{number:03d}"
