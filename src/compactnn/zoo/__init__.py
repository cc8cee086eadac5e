"""Models and real datasets for the experiments.

>>> from compactnn import zoo
>>> train, test = zoo.load_dataset("digits")          # (inputs, targets) TensorDatasets
>>> model = zoo.build("lenet300", in_features=64)     # any nn.Module works downstream
"""

from compactnn.zoo.corpora import CorpusError, load_corpus
from compactnn.zoo.data import DATASETS, DatasetError, load_dataset, read_idx
from compactnn.zoo.models import MODELS, build, lenet5, lenet300, mlp, vgg19, vgg_small

__all__ = [
    "CorpusError", "load_corpus", "DATASETS", "DatasetError", "load_dataset", "read_idx",
    "MODELS", "build", "lenet300", "lenet5", "vgg_small", "vgg19", "mlp",
]
