"""MLflow models-from-code entry of the seq2seq pyfunc (flows/translator.py): MLflow runs
this file to build the model, so nothing is unpickled."""

from mlflow.models import set_model

from flows.translator import Translator

set_model(Translator())
