"""What a cell directory holds and how its files are written, shared by ``embedgrid`` and ``analysis``.

Standard library only, importing neither package (tests/test_imports.py): the grid writes cell directories and the
analysis reads them with the same names (``layout``), the same atomic write (``atomic``) and the same table of the
paper's designs (``designs``), while ``analysis`` still never imports ``embedgrid``.
"""
