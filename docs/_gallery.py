"""sphinx-gallery helpers for docs/conf.py (referred to by name, so that the
Sphinx configuration stays picklable)."""

__all__ = ["ExampleOrder", "matplotlib_style", "reset_torch_threads"]

# Order of the examples in the gallery; any example not listed comes after,
# by file name.
_ORDER = [
    "plot_quickstart.py",
    "plot_precision_recall.py",
    "plot_retrieval_gallery.py",
    "plot_code_length.py",
    "plot_lam_selection.py",
    "plot_custom_backbone.py",
    "plot_search_speed.py",
]


class ExampleOrder:
    """Sort key for ``within_subsection_order``: the order of ``_ORDER``."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        if filename in _ORDER:
            return (0, _ORDER.index(filename), filename)
        return (1, 0, filename)

    def __repr__(self):
        return f"<{type(self).__name__}>"


def reset_torch_threads(gallery_conf, fname):
    """Run each example with one torch thread.

    The examples set this themselves; the reset also keeps an example from
    inheriting another's torch settings.
    """
    import torch

    torch.set_num_threads(1)


def matplotlib_style(gallery_conf, fname):
    """Readable gallery figures: saved at 150 dpi, with larger fonts than matplotlib's 10 pt.

    Runs after sphinx-gallery's matplotlib reset, before each example.
    """
    import matplotlib

    matplotlib.rcParams.update({
        "savefig.dpi": 150,
        "font.size": 12,
        "axes.titlesize": 13,
        "axes.labelsize": 12,
        "xtick.labelsize": 11,
        "ytick.labelsize": 11,
        "legend.fontsize": 11,
    })
