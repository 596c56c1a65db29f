"""Static architecture analysis of Hugging Face modeling files (`codegen analyze`)."""
