"""The layer kinds a file can hold; importing a module registers its kind
(``compactnn.io.schema.register_kind``). A new kind: one module here and one name in
this import line."""

from compactnn.io.kinds import linear, conv2d  # noqa: F401  isort: skip
