"""MLflow models-from-code entry of the word2vec pyfunc (flows/embedder.py): MLflow runs
this file to build the model, so nothing is unpickled."""

from mlflow.models import set_model

from flows.embedder import Embedder

set_model(Embedder())
