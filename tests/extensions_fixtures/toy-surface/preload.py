# A1111 pattern: preload() reads modules.paths.models_path to default a flag (before the app exists).
import os

from modules import paths


def preload(parser):
    parser.add_argument("--toy-surface-models", default=os.path.join(paths.models_path, "toy-surface"))
