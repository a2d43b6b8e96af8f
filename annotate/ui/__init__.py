"""The Streamlit pages. Each page module is also a page script that `st.navigation` runs, and
each checks sign-in (and admin rights) itself, so no page depends on another for its security."""
