import './base.css';
import './operations.css';
import './reports.css';
