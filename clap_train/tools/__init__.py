"""The user commands behind `clap-train zeroshot | retrieve | evaluate`: models in, answers and reports out."""
