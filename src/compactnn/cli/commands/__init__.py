"""One module per ``compactnn`` command; importing a module registers its command
(``compactnn.cli.registry``), and the import order below is the order of
``compactnn --help``. Adding a command: a new module ending with
``register(Command(...))`` and its name on this line.
"""

from compactnn.cli.commands import train, compress, convert, inspect, eval, bench, report, demo  # noqa: F401, I001, E501
