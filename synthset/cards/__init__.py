"""Dataset cards: the README.md and samples.jpg that make a built run publishable.

`write_card(run_dir, ...)` is the entry point (`synthset card RUN`). One module per job: `license`
(whose terms the images carry), `stats` (counts from the Parquet files), `grid` (samples.jpg),
`quality` (optional CLIP score and Vendi diversity), `render` (the Jinja template -> DatasetCard).
"""

from synthset.cards.render import CardResult, card_marker, render_card, write_card

__all__ = ["CardResult", "card_marker", "render_card", "write_card"]
