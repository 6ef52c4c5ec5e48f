import './base.css';
import './operations.css';
import './reports.css';
import './compare.css';
import './forks.css';
