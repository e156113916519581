"""The embedded micro-web: a synthetic Reddit dump and the web it links to, for the demo
and the tests. `generate` plants it and returns the `GroundTruth`; `MicroWeb` serves it on
127.0.0.1. See docs/demo.md.
"""

from pipeline.demo.generate import generate
from pipeline.demo.ground_truth import GroundTruth, PlantedLink, load_ground_truth
from pipeline.demo.scales import SCALES
from pipeline.demo.server import MicroWeb

__all__ = ["SCALES", "GroundTruth", "MicroWeb", "PlantedLink", "generate", "load_ground_truth"]
