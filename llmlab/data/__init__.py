"""Training-data builders for methods that train (X-KDE, Reason-KE): original formats in, examples out."""
