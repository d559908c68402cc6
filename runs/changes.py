"""What the runs app tells whoever listens (the quality app's daily rollups), without knowing them."""

from django.dispatch import Signal

# Sent inside the transaction that creates, changes or deletes runs, with `moments`: the runs'
# creation times (the days whose figures change).
runs_changed = Signal()
