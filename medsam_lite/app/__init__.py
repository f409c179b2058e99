"""The application layer: what a user runs, on top of the library.

The ``medsam-lite`` command (:mod:`.cli`), the CVPR24 challenge runner (:mod:`.challenge`), the one
configuration (:mod:`.config`: settings file + environment + defaults), the notebook helpers
(:mod:`.tutorial`) and the demo (:mod:`.demo`). Nothing below ``app`` imports it."""
