"""Offline MTEB tasks built from real, human-labelled text that registry packages ship (README, "Evaluation").

Every task is a real mteb ``AbsTask*`` subclass with full metadata, evaluated by mteb's own evaluators.
Summarization has no offline task: no registry ships a summarization set with human scores.
"""
from embedgrid.evaluate.tasks import foodeval
from embedgrid.evaluate.tasks.classification import (
    FineFoodsClassification,
    FoodEvalCuisineClassification,
    PangLeePolarityClassification,
    RottenTomatoesClassification,
)
from embedgrid.evaluate.tasks.clustering import (
    FoodEvalCuisineClustering,
    MiniNewsgroupsClustering,
    RottenTomatoesMovieClustering,
    WordNetLexnameClustering,
)
from embedgrid.evaluate.tasks.sts import LeeDocumentSTS, SimLex999STS, WordSim353STS
from embedgrid.evaluate.tasks.wordnet import (
    WordNetGlossPairClassification,
    WordNetReverseDictionaryRetrieval,
    WordNetSiblingReranking,
)

OFFLINE_TASK_CLASSES = [
    LeeDocumentSTS, WordSim353STS, SimLex999STS,
    FineFoodsClassification, RottenTomatoesClassification, PangLeePolarityClassification,
    FoodEvalCuisineClassification,
    WordNetLexnameClustering, RottenTomatoesMovieClustering, MiniNewsgroupsClustering, FoodEvalCuisineClustering,
    WordNetReverseDictionaryRetrieval, *foodeval.RETRIEVAL,
    WordNetSiblingReranking,
    WordNetGlossPairClassification, *foodeval.PAIRS,
]
OFFLINE_TASKS = {cls.metadata.name: cls for cls in OFFLINE_TASK_CLASSES}
